"""The world viewers see: the directory of guilds and members, the cleaning of the
plugins' records, and the event sources that keep it current.
"""

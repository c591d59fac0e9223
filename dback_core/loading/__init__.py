"""Plugin loading and calling: entry-point discovery and selection (``plugins``) and
the one object that calls hooks in order, awaits them and merges their answers (``hooks``).
"""

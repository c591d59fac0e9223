from dback_core.cli import main

main()

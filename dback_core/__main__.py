from dback_core.ops.cli import main

main()

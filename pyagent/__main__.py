from pyagent.cli import main

main()

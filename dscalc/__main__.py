from dscalc.cli import main

main()

from edgetally.cli.main import main

main()

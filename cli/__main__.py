from edgetally.main import main

main()

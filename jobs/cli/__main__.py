from jobs.cli.main import main

main()

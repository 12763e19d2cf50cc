from taxi_cli.cli import main

main()

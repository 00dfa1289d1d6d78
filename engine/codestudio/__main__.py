from codestudio.cli import main

main()

from api.pgwire.server import main

main()

from agent_dispatch.cli import main

main()

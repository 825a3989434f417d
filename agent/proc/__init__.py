"""How a child process is found, started, watched and masked."""

"""Where blocks run: the operator's machine (local) and, later, SSH hosts."""

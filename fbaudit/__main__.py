"""`python -m fbaudit`: the same as the `fbaudit` command (what the scheduled jobs run)."""
from .cli import main

if __name__ == "__main__":
    main()

"""``python -m sice`` (also what ``torchrun -m sice train`` runs)."""
from .cli.main import main

if __name__ == "__main__":
    main()

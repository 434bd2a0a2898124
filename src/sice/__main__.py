"""``python -m sice`` (also what ``torchrun -m sice train`` runs)."""
from .cli.main import run

if __name__ == "__main__":
    run()

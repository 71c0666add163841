"""`python -m maskgit_inpaint ...` runs the `maskgit` CLI (for machines where it is not installed)."""
import sys

from .cli import main

sys.exit(main())

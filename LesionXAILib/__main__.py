"""Allows ``python -m LesionXAILib`` as an alias of the ``lesionxai`` command."""

from LesionXAILib.cli.main import main

raise SystemExit(main())

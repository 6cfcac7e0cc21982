"""Installing LesionXAI's Python dependencies into an application's Python (3D Slicer) on first use.

``dependencies``: what is missing and how to install it (stdlib only: usable before torch is installed).
"""

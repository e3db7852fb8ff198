"""Stage 5, the machines: the shape both platforms share (shape.py) and one package per platform. Which one runs is chosen in __main__.py."""

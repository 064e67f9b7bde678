"""The file formats uploads arrive in, read the way their authors meant them, or refused."""

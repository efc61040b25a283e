"""The HTTP edge: the only package that imports aiohttp.web."""

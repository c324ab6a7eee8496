def version() -> str:
    """The installed tradebot's version (the package metadata), or 'unknown' outside an install."""
    from importlib.metadata import PackageNotFoundError  # noqa: PLC0415
    from importlib.metadata import version as installed  # noqa: PLC0415

    try:
        return installed("tradebot")
    except PackageNotFoundError:
        return "unknown"

"""Price charts: what a chart shows (`spec`), how it is drawn (`render`, matplotlib) and where (`worker`)."""

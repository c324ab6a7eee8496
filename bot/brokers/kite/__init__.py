"""Zerodha Kite Connect v3: the daily session, the HTTP client and the Broker port for NSE and NFO."""

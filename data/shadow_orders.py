"""What shadow mode keeps of an order it did not send: the exact request the real broker would have received.

Recorded beside the paper fill (`tradebot shadow`); not a trading concept, so not in `engine/`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from http import HTTPMethod

from engine.domain import Side, ensure_utc


@dataclass(frozen=True, slots=True)
class ShadowOrder:
    """An order shadow mode kept back: the exact request the real broker would have received, or why none.

    Either `method`, `path` and `body_json` (the exact JSON text) are set, or `refusal` says why the broker
    adapter could not even build the request; never both.
    """

    client_order_id: str
    broker: str
    symbol: str
    side: Side
    quantity: Decimal
    created_at: datetime
    method: HTTPMethod | None = None
    path: str | None = None
    body_json: str | None = None
    refusal: str | None = None

    def __post_init__(self) -> None:
        cid = self.client_order_id
        if not cid or not self.broker or not self.symbol:
            raise ValueError("a shadow order needs its client order id, broker and symbol")
        ensure_utc(self.created_at, "created_at")
        if not self.quantity.is_finite() or self.quantity <= 0:
            raise ValueError(f"shadow order {cid}: quantity must be positive, was {self.quantity}")
        request = (self.method, self.path, self.body_json)
        built = all(v is not None for v in request)
        if not built and any(v is not None for v in request):
            raise ValueError(f"shadow order {cid}: method, path and body are set together")
        if built == (self.refusal is not None):
            raise ValueError(f"shadow order {cid}: exactly one of the request and the refusal is set")
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError(f"shadow order {cid}: path must start with '/', was {self.path!r}")
        if self.body_json is not None:
            try:
                body = json.loads(self.body_json)
            except ValueError as exc:
                raise ValueError(f"shadow order {cid}: body is not JSON: {exc}") from exc
            if not isinstance(body, dict):
                raise ValueError(f"shadow order {cid}: body must be a JSON object")

"""/workspace/: the customer 360 page, figures and charts per customer 360 database
(computed by ../customer360.py, cached until the warehouse changes)."""

from __future__ import annotations

import dataclasses

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from cdp.serve.workspace import customer360
from cdp.serve.workspace.reader import WarehouseBusy
from cdp.serve.workspace.web import PREFIX, Web


def add_routes(app: FastAPI, web: Web) -> None:
    ws = web.ws

    @app.get(f"{PREFIX}/", response_class=HTMLResponse, include_in_schema=False)
    @web.off_loop
    def customer_360(request: Request):
        web.who(request)
        def figures():
            with ws.read() as con:
                return ([customer360.database_card(con, ws.cfg, name) for name in ws.cfg.customer_databases],
                        customer360.stitch_figures(con, ws.cfg))

        try:
            cards, stitch = ws.figures.get(ws.cfg.warehouse_path, figures)
        except WarehouseBusy as exc:
            return web.busy(request, exc)
        rebuilds = {card.name: customer360.last_rebuild(ws.instance, card.name, ws.cfg.warehouse_path)
                    for card in cards}
        cards = [dataclasses.replace(card, rebuild=rebuilds[card.name]) for card in cards]
        return web.page(request, "customer360.html", cards=cards, stitch=stitch, nav="c360")

"""Variant (a): aiohttp web server + aiohttp ClientSession, on uvloop."""

import aiohttp
import orjson
import uvloop
from _common import PATH, PORT, UPSTREAM_URL
from aiohttp import web


async def proxy(request: web.Request) -> web.Response:
    body = await request.read()
    orjson.loads(body)
    session: aiohttp.ClientSession = request.app["session"]
    async with session.post(UPSTREAM_URL, data=body, headers={"Content-Type": "application/json"}) as r:
        data = await r.read()
        status = r.status
    orjson.loads(data)
    return web.Response(body=data, status=status, content_type="application/json")


async def on_startup(app: web.Application) -> None:
    app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))


async def on_cleanup(app: web.Application) -> None:
    await app["session"].close()


def main() -> None:
    app = web.Application()
    app.router.add_post(PATH, proxy)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=PORT, access_log=None, print=None)


if __name__ == "__main__":
    main()

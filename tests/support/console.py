"""The operator console as a browser drives it: no redirects followed, a login form to fill."""

from __future__ import annotations

import re

import httpx

from service.cli.devstack import RunningStack


def browser(stack: RunningStack) -> httpx.Client:
    return httpx.Client(base_url=stack.api_url, timeout=30, follow_redirects=False)


def sign_in(http: httpx.Client, secret: str) -> httpx.Response:
    form = http.get("/console/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token, form.text
    return http.post("/console/login", data={"login_token": token[1], "secret": secret})

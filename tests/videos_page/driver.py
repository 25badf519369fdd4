"""Drives the Videos page in chromium with Playwright; run in the interpreter that has Playwright.

Usage: ``python driver.py BASE_URL TOKEN SCREENSHOT_DIR DAG_ID TASK_PATH`` prints one JSON object of
findings (TASK_PATH: the UI path of a task instance with a "Video" extra link).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone

from playwright.sync_api import sync_playwright

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def main() -> None:
    base, token, shots, dag_id, task_path = sys.argv[1:6]
    found: dict[str, object] = {}
    console: list[str] = []
    try:
        run(base, token, shots, dag_id, task_path, found, console)
    except Exception:
        print("browser console:\n" + "\n".join(console), file=sys.stderr)
        raise
    print(json.dumps(found))


def run(
    base: str, token: str, shots: str, dag_id: str, task_path: str, found: dict[str, object], console: list[str]
) -> None:
    """Walk through the page; findings go to ``found``, the browser's console to ``console``."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("VIDGEN_CHROMIUM", "/usr/bin/chromium"), args=ARGS, headless=True
        )
        context = browser.new_context(viewport={"width": 1600, "height": 900})
        context.add_cookies([{"name": "_token", "value": token, "url": base}])
        page = context.new_page()
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
        page.set_default_timeout(60_000)
        page.goto(f"{base}/vidgen/")
        page.wait_for_selector("body[data-loaded]", state="attached")
        rows = page.locator("#videos tr")
        found["rows"] = rows.count()
        found["dag_ids"] = [rows.nth(i).get_attribute("data-dag-id") for i in range(rows.count())]
        found["dag_options"] = page.locator("#dag_id option").evaluate_all("(options) => options.map(o => o.value)")
        # The inline player reads the stream's metadata (its duration) through the API server.
        page.wait_for_function(
            "() => [...document.querySelectorAll('video')].some(v => v.readyState >= 1 && v.duration > 0)"
        )
        found["durations"] = page.locator("video").evaluate_all(
            "(videos) => videos.map(v => v.readyState >= 1 ? v.duration : null)"
        )
        page.screenshot(path=os.path.join(shots, "videos-page.png"))

        # The DAG filter.
        page.evaluate("() => { delete document.body.dataset.loaded; }")
        page.select_option("#dag_id", dag_id)
        page.click("#apply")
        page.wait_for_selector("body[data-loaded]", state="attached")
        filtered = page.locator("#videos tr")
        found["filtered_dag_ids"] = [filtered.nth(i).get_attribute("data-dag-id") for i in range(filtered.count())]

        # The date filter: a day with no saves.
        page.evaluate("() => { delete document.body.dataset.loaded; }")
        page.select_option("#dag_id", "")
        page.fill("#since", "2001-01-01")
        page.fill("#until", "2001-01-02")
        page.click("#apply")
        page.wait_for_selector("body[data-loaded]", state="attached")
        found["rows_in_2001"] = page.locator("#videos tr").count()
        page.evaluate("() => { delete document.body.dataset.loaded; }")
        today = datetime.now(timezone.utc).date().isoformat()
        page.fill("#since", today)
        page.fill("#until", today)
        page.click("#apply")
        page.wait_for_selector("body[data-loaded]", state="attached")
        found["rows_today"] = page.locator("#videos tr").count()

        # The page inside the Airflow UI (navigation entry "Videos", the page in a frame).
        page.goto(f"{base}/plugin/vidgen-videos")
        frame = page.frame_locator("iframe").first
        frame.locator("#videos tr").first.wait_for()
        found["nav_has_videos"] = page.get_by_text("Videos").count() > 0
        page.screenshot(path=os.path.join(shots, "videos-page-in-airflow.png"))

        # The task instance's "Video" extra link, and where it leads.
        page.goto(f"{base}{task_path}/details")  # the task instance's Details tab lists its extra links
        link = page.get_by_role("link", name="Video", exact=True)
        link.wait_for()
        page.screenshot(path=os.path.join(shots, "video-extra-link.png"))
        found["link_href"] = link.get_attribute("href")
        page.goto(str(found["link_href"]))
        page.wait_for_selector("body[data-loaded]", state="attached")
        found["linked_rows"] = page.locator("#videos tr").evaluate_all(
            "(rows) => rows.map(r => r.dataset.generationId)"
        )
        browser.close()


if __name__ == "__main__":
    main()

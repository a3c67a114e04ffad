/// The page at `/`: every camera with its figures and a preview refreshed once a second, and the
/// annotation outbox; all from the JSON API, polled. With authentication on, open it as
/// `/#token=TOKEN` (the fragment never leaves the browser; the page sends it as a bearer token).
enum WebPage {
  static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>FrameRelay</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2330; background: #f5f6f8; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  .muted { color: #6b7280; }
  #cameras { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 1rem; margin: 1rem 0; }
  .camera { background: #fff; border-radius: 8px; box-shadow: 0 1px 3px rgba(0,0,0,.12); overflow: hidden; }
  .camera img { display: block; width: 100%; aspect-ratio: 16 / 9; object-fit: contain; background: #111; }
  .camera header { display: flex; justify-content: space-between; align-items: center; padding: .5rem .75rem; }
  .camera h2 { font-size: 1rem; margin: 0; }
  .state { font-size: .75rem; padding: .1rem .5rem; border-radius: 99px; background: #e5e7eb; }
  .state.running { background: #d1fae5; color: #065f46; }
  .state.restarting { background: #fef3c7; color: #92400e; }
  .state.failed, .state.stopped { background: #fee2e2; color: #991b1b; }
  dl { display: grid; grid-template-columns: auto 1fr; gap: .1rem .75rem; margin: 0; padding: .25rem .75rem .75rem; }
  dt { color: #6b7280; } dd { margin: 0; font-variant-numeric: tabular-nums; }
  .error { color: #991b1b; }
  #outbox { background: #fff; border-radius: 8px; padding: .75rem; box-shadow: 0 1px 3px rgba(0,0,0,.12); }
</style>
</head>
<body>
<h1>FrameRelay</h1>
<div class="muted">updated <span id="updated">never</span> · <span id="count">0</span> cameras</div>
<div id="problem" class="error"></div>
<div id="cameras"></div>
<section id="outbox"><strong>Annotation outbox</strong> <span id="outbox-figures" class="muted">…</span></section>
<script>
"use strict";
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};
const cards = new Map();

async function get(path) {
  const response = await fetch(path, { headers, cache: "no-store" });
  if (!response.ok) throw new Error(path + ": " + response.status + " " + (await response.text()));
  return response;
}

function text(value, unit) { return value === null || value === undefined ? "–" : value + (unit || ""); }

function card(device) {
  let element = cards.get(device.id);
  if (!element) {
    element = document.createElement("article");
    element.className = "camera";
    element.dataset.device = device.id;
    element.innerHTML = '<img alt=""><header><h2></h2><span class="state"></span></header><dl></dl>';
    element.querySelector("h2").textContent = device.id;
    document.getElementById("cameras").appendChild(element);
    cards.set(device.id, element);
  }
  const state = element.querySelector(".state");
  state.textContent = device.state;
  state.className = "state " + device.state;
  const rows = [
    ["codec", device.codec ? device.codec + " " + device.width + "×" + device.height : "–"],
    ["fps", device.fps.toFixed(1)],
    ["bitrate", Math.round(device.bitrate_kbps) + " kbit/s"],
    ["ring", device.ring_seconds.toFixed(1) + " s, " + device.ring_frames + " frames"],
    ["frames stored", device.frames_stored],
    ["frames lost", device.frames_lost],
    ["ack round trip", text(device.ack_round_trip_ms, " ms")],
    ["consumers", device.consumers],
    ["recording", device.recording ? "on" : "off"],
    ["passthrough", device.passthrough ? (device.passthrough_connected ? "on, connected" : "on, connecting") : "off"],
    ["source", device.source || "–"],
    ["last error", device.last_error || "–"],
  ];
  const list = element.querySelector("dl");
  list.replaceChildren(...rows.flatMap(([name, value]) => {
    const dt = document.createElement("dt"); dt.textContent = name;
    const dd = document.createElement("dd"); dd.textContent = value;
    dd.dataset.field = name.replace(/ /g, "-");
    if (name === "last error" && device.last_error) dd.className = "error";
    return [dt, dd];
  }));
  return element;
}

async function preview(element) {
  const image = element.querySelector("img");
  if (image.dataset.loading) return;
  image.dataset.loading = "1";
  try {
    const response = await get("/api/devices/" + encodeURIComponent(element.dataset.device) + "/snapshot.jpg");
    const url = URL.createObjectURL(await response.blob());
    const old = image.src;
    image.src = url;
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  } catch (error) {
    image.alt = "no picture yet";
  } finally {
    delete image.dataset.loading;
  }
}

async function refresh() {
  try {
    const devices = await (await get("/api/devices")).json();
    for (const device of devices) preview(card(device));
    document.getElementById("count").textContent = devices.length;
    const outbox = await (await get("/api/outbox")).json();
    document.getElementById("outbox-figures").textContent =
      "depth " + outbox.depth + " · oldest " + (outbox.oldest_age_seconds == null ? "–" : outbox.oldest_age_seconds.toFixed(1) + " s") +
      " · upstream " + (outbox.upstream || "none") + " · forwarded " + outbox.forwarded + " · failures " + outbox.forward_failures;
    document.getElementById("problem").textContent = "";
    document.getElementById("updated").textContent = new Date().toLocaleTimeString();
  } catch (error) {
    document.getElementById("problem").textContent = String(error);
  }
}

refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
"""#
}

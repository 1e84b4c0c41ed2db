/*
 * The datastream chart page: lists the streams of the read API, plots one with uPlot and, as
 * the user zooms, refetches the visible span at the finest granularity that keeps the drawn
 * points within POINT_BUDGET. Plain browser JavaScript, no build step.
 */
(function () {
  "use strict";

  const POINT_BUDGET = 2000;
  const STREAM_PAGE_SIZE = 1000;
  const CHART_HEIGHT = 420;
  const MIN_SPAN_SECONDS = 60;
  const SERIES_COLOUR = "#1f6feb";
  const EDGE_COLOUR = "rgba(31, 111, 235, 0.25)";
  const BAND_FILL = "rgba(31, 111, 235, 0.18)";
  // The levels of behaviour §2, finest first.
  const GRANULARITIES = [
    { name: "seconds", seconds: 1 },
    { name: "10seconds", seconds: 10 },
    { name: "minutes", seconds: 60 },
    { name: "10minutes", seconds: 600 },
    { name: "hours", seconds: 3600 },
    { name: "6hours", seconds: 21600 },
    { name: "days", seconds: 86400 },
  ];

  // Time axis labels in UTC and 24-hour ISO style, per tick spacing: [spacing in seconds, tick
  // label, label at the first tick / where a larger unit changes...] as uPlot expects them.
  const TIME_LABELS = [
    [86400 * 365, "{YYYY}", null, null, null, null, null, null, 1],
    [86400 * 28, "{YYYY}-{MM}", "\n{YYYY}", null, null, null, null, null, 1],
    [86400, "{MM}-{DD}", "\n{YYYY}", null, null, null, null, null, 1],
    [3600, "{HH}:{mm}", "\n{YYYY}-{MM}-{DD}", null, "\n{MM}-{DD}", null, null, null, 1],
    [60, "{HH}:{mm}", "\n{YYYY}-{MM}-{DD}", null, "\n{MM}-{DD}", null, null, null, 1],
    [1, ":{ss}", "\n{YYYY}-{MM}-{DD} {HH}:{mm}", null, "\n{MM}-{DD} {HH}:{mm}", null,
      "\n{HH}:{mm}", null, 1],
    [0.001, ":{ss}.{fff}", "\n{YYYY}-{MM}-{DD} {HH}:{mm}", null, "\n{MM}-{DD} {HH}:{mm}", null,
      "\n{HH}:{mm}", null, 1],
  ];

  const state = {
    streams: [],
    stream: null,
    granularity: null,
    pointsDrawn: 0,
    truncated: false,
    xRange: null,
    loads: 0,
    loading: false,
    error: null,
  };
  let chart = null;
  let chartShape = null;
  let generation = 0;
  let applyingView = false;

  const element = (id) => document.getElementById(id);

  // ---- talking to the read API ------------------------------------------------------------

  /** GET a JSON document; a non-2xx answer becomes an Error carrying the server's message. */
  async function fetchJSON(url) {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const message = body && typeof body.error === "string" ? body.error : response.statusText;
      const hint = response.status === 401 ? " (open the page as /?token=<your token>)" : "";
      throw new Error(`HTTP ${response.status}: ${message}${hint}`);
    }
    if (body === null) throw new Error(`the answer to ${url} is not JSON`);
    return body;
  }

  function apiURL(path, params) {
    const url = new URL(path, document.baseURI);
    if (params) url.search = new URLSearchParams(params).toString();
    return url;
  }

  /** Every stream, following the list's `next` links page by page. */
  async function fetchAllStreams() {
    const streams = [];
    let url = apiURL("api/v1/stream/", { limit: STREAM_PAGE_SIZE });
    while (url) {
      const page = await fetchJSON(url);
      streams.push(...page.objects);
      url = page.meta && page.meta.next ? new URL(page.meta.next, document.baseURI) : null;
    }
    return streams;
  }

  function fetchDatapoints(stream, level, range, limit) {
    const params = {
      granularity: level.request,
      start: range[0].toFixed(6),
      end: range[1].toFixed(6),
      limit: String(limit),
    };
    if (!level.raw) {
      params.value_downsamplers = levelValueNames(stream).join(",");
      params.time_downsamplers = "mean";
    }
    const path = `api/v1/stream/${encodeURIComponent(stream.id)}/`;
    return fetchJSON(apiURL(path, params)).then((body) => body.datapoints);
  }

  // ---- choosing the level of detail -------------------------------------------------------

  function isNumeric(stream) {
    return stream.value_type === "numeric";
  }

  /** The value downsamplers a level read asks for: mean with its min-max band, else counts. */
  function levelValueNames(stream) {
    const kept = new Set(stream.value_downsamplers);
    const wanted = isNumeric(stream) ? ["mean", "min", "max"].filter((name) => kept.has(name)) : [];
    return wanted.length ? wanted : ["count"];
  }

  /**
   * The levels worth trying for a span, finest first: raw (numeric streams only; its width is
   * the stream's highest granularity, a guess that the fetch confirms) and then every stored
   * level, starting at the finest one whose buckets cover the span within the budget.
   */
  function levelPlan(stream, span) {
    const highest =
      GRANULARITIES.find((g) => g.name === stream.highest_granularity) || GRANULARITIES[0];
    const levels = [];
    if (isNumeric(stream)) {
      levels.push({ name: "raw", request: highest.name, seconds: highest.seconds, raw: true });
    }
    if (stream.value_downsamplers.length) {
      for (const g of GRANULARITIES) {
        if (g.seconds > highest.seconds) {
          levels.push({ name: g.name, request: g.name, seconds: g.seconds, raw: false });
        }
      }
    }
    const fits = (level) => Math.ceil(span / level.seconds) + 1 <= POINT_BUDGET;
    const fitting = levels.findIndex(fits);
    return fitting < 0 ? levels.slice(-1) : levels.slice(fitting);
  }

  /**
   * Fetches the range at the finest level that stays within the budget. A level that comes
   * back over the budget (raw data denser than guessed) gives way to the next coarser one; an
   * empty level (not downsampled that far yet) falls back to the first raw points. `level` is
   * null when nothing can be plotted (a non-numeric stream without downsamplers).
   */
  async function fetchWithinBudget(stream, range) {
    const plan = levelPlan(stream, range[1] - range[0]);
    let overflow = null;
    for (const level of plan) {
      const points = await fetchDatapoints(stream, level, range, POINT_BUDGET + 1);
      if (points.length > POINT_BUDGET) {
        overflow = overflow || { level, points: points.slice(0, POINT_BUDGET), truncated: true };
        continue;
      }
      if (points.length > 0 || level.raw) return { level, points, truncated: false };
      break;
    }
    if (overflow) return overflow;
    const raw = levelPlan(stream, 0)[0];
    if (raw && raw.raw && !plan.some((level) => level.raw)) {
      const points = await fetchDatapoints(stream, raw, range, POINT_BUDGET + 1);
      const truncated = points.length > POINT_BUDGET;
      return { level: raw, points: points.slice(0, POINT_BUDGET), truncated };
    }
    return { level: plan[plan.length - 1] || null, points: [], truncated: false };
  }

  // ---- datapoints to uPlot columns --------------------------------------------------------

  function seconds(isoTime) {
    return Date.parse(isoTime) / 1000;
  }

  function asNumber(value) {
    if (typeof value === "number") return value;
    if (typeof value === "string" && value.trim() !== "") {
      const parsed = Number(value);
      return Number.isFinite(parsed) ? parsed : null;
    }
    return null;
  }

  /** uPlot's aligned columns and the series that draw them. */
  function toChartData(level, points) {
    const xs = points.map((p) => (level.raw ? seconds(p.t) : seconds(p.t.m)));
    if (level.raw) {
      return { shape: "raw", data: [xs, points.map((p) => asNumber(p.v))] };
    }
    const column = (key) => points.map((p) => asNumber(p.v[key]));
    const first = points.length ? points[0].v : {};
    if ("l" in first && "u" in first) {
      const mean = "m" in first ? column("m") : xs.map(() => null);
      return { shape: "band", data: [xs, column("u"), mean, column("l")] };
    }
    if ("m" in first) return { shape: "mean", data: [xs, column("m")] };
    return { shape: "count", data: [xs, column("c")] };
  }

  function seriesFor(shape) {
    const time = { label: "UTC", value: "{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}" };
    const line = (label) => ({ label, stroke: SERIES_COLOUR, width: 1.5 });
    const edge = (label) => ({ label, stroke: EDGE_COLOUR, width: 1 });
    switch (shape) {
      case "band":
        return {
          series: [time, edge("max"), line("mean"), edge("min")],
          bands: [{ series: [1, 3], fill: BAND_FILL }],
        };
      case "mean":
        return { series: [time, line("mean")], bands: [] };
      case "count":
        return { series: [time, line("count")], bands: [] };
      default:
        return { series: [time, line("value")], bands: [] };
    }
  }

  // ---- the chart --------------------------------------------------------------------------

  function chartWidth() {
    return Math.max(320, element("chart").clientWidth);
  }

  function createChart(shape, data) {
    if (chart) chart.destroy();
    const { series, bands } = seriesFor(shape);
    chart = new uPlot(
      {
        width: chartWidth(),
        height: CHART_HEIGHT,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        scales: { x: { time: true } },
        series,
        bands,
        axes: [{ values: TIME_LABELS }, {}],
        cursor: {
          drag: { x: true, y: false, setScale: true },
          // Double-click shows the whole stream, not just the points loaded for the zoom.
          bind: { dblclick: () => () => { showWholeStream(); return null; } },
        },
        hooks: { setScale: [onScaleChanged] },
      },
      data,
      element("chart"),
    );
    chartShape = shape;
  }

  /** Draws new columns over exactly `range`, without the scale change counting as a zoom. */
  function draw(shape, data, range) {
    applyingView = true;
    if (!chart || chartShape !== shape) createChart(shape, data);
    chart.batch(() => {
      chart.setData(data, false);
      chart.setScale("x", { min: range[0], max: range[1] });
    });
    // uPlot fires its hooks from a microtask queued above: clear the flag after them.
    queueMicrotask(() => { applyingView = false; });
  }

  function onScaleChanged(u, key) {
    if (key !== "x" || applyingView || !state.stream) return;
    const { min, max } = u.scales.x;
    if (min == null || max == null || max <= min) return;
    loadRange([min, max]);
  }

  // ---- loading and showing a range --------------------------------------------------------

  function wholeRange(stream) {
    if (!stream.earliest_datapoint || !stream.latest_datapoint) return null;
    let start = seconds(stream.earliest_datapoint);
    let end = seconds(stream.latest_datapoint);
    if (end - start < MIN_SPAN_SECONDS) {
      const middle = (start + end) / 2;
      start = middle - MIN_SPAN_SECONDS / 2;
      end = middle + MIN_SPAN_SECONDS / 2;
    }
    return [start, end];
  }

  function showWholeStream() {
    if (!state.stream) return;
    const range = wholeRange(state.stream);
    if (range) loadRange(range);
  }

  async function loadRange(range) {
    const stream = state.stream;
    const current = ++generation;
    state.loading = true;
    setStatus(`Loading ${describeRange(range)}…`);
    try {
      const result = await fetchWithinBudget(stream, range);
      if (current !== generation) return;
      showError(null);
      state.error = null;
      if (!result.level) {
        clearChart("Only numeric streams, or streams with downsamplers, can be plotted.");
        return;
      }
      const { shape, data } = toChartData(result.level, result.points);
      draw(shape, data, range);
      Object.assign(state, {
        granularity: result.level.name,
        pointsDrawn: data[0].length,
        truncated: result.truncated,
        xRange: range,
      });
      showChartInfo();
    } catch (error) {
      if (current !== generation) return;
      state.error = error.message;
      showError(error.message);
    } finally {
      if (current === generation) {
        state.loading = false;
        state.loads += 1;
        setStatus(`${state.streams.length} streams`);
      }
    }
  }

  // ---- the stream list --------------------------------------------------------------------

  /** Tags as [dotted path, text] pairs, nested objects flattened. */
  function flatTags(tags, prefix = "") {
    const pairs = [];
    for (const [key, value] of Object.entries(tags || {})) {
      const path = prefix ? `${prefix}.${key}` : key;
      if (value && typeof value === "object" && !Array.isArray(value)) {
        pairs.push(...flatTags(value, path));
      } else {
        pairs.push([path, typeof value === "string" ? value : JSON.stringify(value)]);
      }
    }
    return pairs;
  }

  function streamLabel(stream) {
    return flatTags(stream.tags).map(([path, text]) => `${path}=${text}`).join(" ");
  }

  function streamButton(stream) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.streamId = stream.id;
    for (const [path, text] of flatTags(stream.tags)) {
      const tag = document.createElement("span");
      tag.className = "tag";
      const key = document.createElement("span");
      key.className = "tag-key";
      key.textContent = `${path}=`;
      tag.append(key, text);
      button.append(tag);
    }
    const id = document.createElement("span");
    id.className = "stream-id";
    id.textContent = stream.id;
    button.append(id);
    button.addEventListener("click", () => selectStream(stream.id));
    return button;
  }

  function renderStreamList() {
    const needle = element("filter").value.trim().toLowerCase();
    const list = element("stream-list");
    list.textContent = "";
    let shown = 0;
    for (const stream of state.streams) {
      const haystack = `${streamLabel(stream)} ${stream.id}`.toLowerCase();
      if (needle && !haystack.includes(needle)) continue;
      const item = document.createElement("li");
      const button = streamButton(stream);
      const selected = Boolean(state.stream && state.stream.id === stream.id);
      button.setAttribute("aria-current", String(selected));
      item.append(button);
      list.append(item);
      shown += 1;
    }
    const total = state.streams.length;
    element("stream-count").textContent =
      needle ? `${shown} of ${total} streams` : `${total} streams`;
  }

  function selectStream(streamId) {
    const stream = state.streams.find((s) => s.id === streamId);
    if (!stream) {
      showError(`No stream has the id ${streamId}.`);
      return;
    }
    state.stream = stream;
    state.granularity = null;
    state.pointsDrawn = 0;
    state.xRange = null;
    history.replaceState(null, "", `${location.pathname}#${encodeURIComponent(stream.id)}`);
    for (const button of element("stream-list").querySelectorAll("button")) {
      button.setAttribute("aria-current", String(button.dataset.streamId === stream.id));
    }
    element("chart-title").textContent = streamLabel(stream) || stream.id;
    const range = wholeRange(stream);
    clearChart(range ? "" : "This stream has no datapoints yet.");
    if (range) {
      loadRange(range);
    } else {
      generation += 1; // a load still running for another stream is now stale
    }
  }

  function clearChart(message) {
    if (chart) chart.destroy();
    chart = null;
    chartShape = null;
    element("chart-info").textContent = message;
  }

  // ---- status lines -----------------------------------------------------------------------

  function formatTime(unixSeconds) {
    return new Date(unixSeconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "");
  }

  function describeRange(range) {
    return `${formatTime(range[0])} – ${formatTime(range[1])} UTC`;
  }

  function showChartInfo() {
    const level =
      state.granularity === "raw" ? "raw datapoints" : `granularity ${state.granularity}`;
    const cut = state.truncated ? ` (the first ${POINT_BUDGET} only)` : "";
    element("chart-info").textContent =
      `${level} · ${state.pointsDrawn} points${cut} · ${describeRange(state.xRange)}`;
  }

  function setStatus(text) {
    element("status").textContent = text;
  }

  function showError(message) {
    const box = element("error");
    box.hidden = !message;
    box.textContent = message || "";
  }

  // ---- start-up ---------------------------------------------------------------------------

  // A read-only view of the page's state, for scripts and browser tests.
  Object.defineProperty(window, "datastreamChart", {
    get: () => Object.freeze({
      streamId: state.stream ? state.stream.id : null,
      granularity: state.granularity,
      pointsDrawn: state.pointsDrawn,
      truncated: state.truncated,
      xRange: state.xRange ? Object.freeze([...state.xRange]) : null,
      budget: POINT_BUDGET,
      loads: state.loads,
      loading: state.loading,
      error: state.error,
    }),
  });

  /** The token has set its cookie by now; keep it out of the address bar and history. */
  function forgetTokenInAddress() {
    const url = new URL(location.href);
    if (!url.searchParams.has("token")) return;
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }

  async function start() {
    forgetTokenInAddress();
    element("filter").addEventListener("input", renderStreamList);
    window.addEventListener("resize", () => {
      if (chart) chart.setSize({ width: chartWidth(), height: CHART_HEIGHT });
    });
    try {
      state.streams = await fetchAllStreams();
    } catch (error) {
      state.error = error.message;
      showError(error.message);
      setStatus("Could not list the streams");
      return;
    }
    setStatus(`${state.streams.length} streams`);
    renderStreamList();
    selectStreamInAddress();
    window.addEventListener("hashchange", selectStreamInAddress);
  }

  /** `/#<stream id>` opens that stream, so a chart can be linked to. */
  function selectStreamInAddress() {
    const wanted = decodeURIComponent(location.hash.slice(1));
    if (wanted && !(state.stream && state.stream.id === wanted)) selectStream(wanted);
  }

  start();
})();

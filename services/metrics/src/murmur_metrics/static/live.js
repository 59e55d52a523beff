// The overview, first fetched once, then pushed by the server as SSE
// `overview` events. EventSource retries a dropped stream by itself; a
// stream it gave up on (an error status, a wrong content type) is reopened
// here after a pause.

const OVERVIEW_URL = "/api/v1/overview";
const STREAM_URL = "/api/v1/stream";
const REOPEN_MS = 5000;

// onState(state): "connecting" | "live" | "reconnecting" | "offline"
export async function follow(onOverview, onState) {
  onState("connecting");
  try {
    const response = await fetch(OVERVIEW_URL, {
      cache: "no-store",
      headers: { Accept: "application/json" },
    });
    if (response.ok) onOverview(await response.json());
  } catch {
    // The stream below brings the same data once the service answers.
  }
  open(onOverview, onState);
}

function open(onOverview, onState) {
  const source = new EventSource(STREAM_URL);
  source.addEventListener("open", () => onState("live"));
  source.addEventListener("overview", (event) => {
    let overview;
    try {
      overview = JSON.parse(event.data);
    } catch {
      return; // A torn or foreign message: the next snapshot is seconds away.
    }
    onState("live");
    onOverview(overview);
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      onState("offline");
      setTimeout(() => open(onOverview, onState), REOPEN_MS);
    } else {
      onState("reconnecting");
    }
  });
}

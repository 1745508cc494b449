// A job page redraws itself when a new event of its job arrives (Server-Sent Events).
"use strict";

(() => {
  const job = document.body.dataset.job;
  const source = new EventSource(`/api/events?job=${encodeURIComponent(job)}&backlog=0`);
  source.addEventListener("event", () => {
    source.close();
    window.location.reload();
  });
})();

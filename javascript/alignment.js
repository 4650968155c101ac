// Alignment extension: shared helpers for the Rank & Refine and Alignment Training tabs.
// Loaded by the WebUI into the page head, and by the standalone app through gradio's head.
(function () {
    "use strict";
    if (window.alignmentExtension) {
        return;
    }
    window.alignmentExtension = {
        version: 1,
        // gradio mounts inside a shadow root in some versions; find our elements either way.
        root: function () {
            var app = document.querySelector("gradio-app");
            return (app && app.shadowRoot) ? app.shadowRoot : document;
        },
    };
})();

// Alignment extension: Like / Dislike / Prefer this one under the WebUI's txt2img and img2img result galleries.
//
// A row of our own is inserted after each gallery's button row (nothing of the WebUI's or other extensions'
// is moved or changed). A click, or the keys L / D / P while the gallery has focus, posts the gallery's image
// URLs, the shown image's index and the WebUI's generation info to /alignment/v1/preferences/gallery, which
// stores the image with its infotext in the preference store. Nothing runs during generation except a
// one-per-second check that the row is still there. Also: the Curate tab's keys (1 / 2 / S / U).
(function () {
    "use strict";
    if (window.alignmentGalleryLikes) {
        return;
    }
    window.alignmentGalleryLikes = true;
    var TABS = ["txt2img", "img2img"];
    var ROUTE = "alignment/v1/preferences/gallery";
    var KEYS = { l: "like", d: "dislike", p: "prefer" };
    var LABELS = { like: "👍 Like", dislike: "👎 Dislike", prefer: "★ Prefer this one" };
    var TIPS = {
        like: "Store this image as liked in the preference store (key L)",
        dislike: "Store this image as disliked (key D)",
        prefer: "This image wins over the other images of the batch (key P)"
    };
    var state = { lastTab: null, busy: false };

    function root() {
        var app = document.querySelector("gradio-app");
        return app && app.shadowRoot ? app.shadowRoot : document;
    }

    function gallery(tab) {
        return root().querySelector("#" + tab + "_gallery");
    }

    // ----- reading the gallery -----------------------------------------------------------------

    function thumbnails(el) {
        var small = el.querySelectorAll(".thumbnail-item.thumbnail-small img, .thumbnail-small img");
        if (small.length) {
            return Array.prototype.slice.call(small);
        }
        return Array.prototype.slice.call(el.querySelectorAll(".thumbnail-item img, .grid-wrap img"));
    }

    function bare(src) {
        return (src || "").split("?")[0];
    }

    // The image on show: the preview's image, found among the thumbnails by its URL (else the selected one).
    function shownIndex(el, thumbs) {
        var preview = el.querySelector(".preview img, img.preview, .image-preview img");
        if (preview) {
            var src = bare(preview.getAttribute("src"));
            for (var i = 0; i < thumbs.length; i++) {
                if (bare(thumbs[i].getAttribute("src")) === src) {
                    return i;
                }
            }
        }
        for (var j = 0; j < thumbs.length; j++) {
            var item = thumbs[j].closest(".thumbnail-item");
            if (item && item.classList.contains("selected")) {
                return j;
            }
        }
        return thumbs.length === 1 ? 0 : -1;
    }

    function fieldText(id) {
        var el = root().querySelector("#" + id);
        if (!el) {
            return "";
        }
        var input = el.matches("textarea, input") ? el : el.querySelector("textarea, input");
        return input ? input.value : el.innerText || "";
    }

    function pageToken() {
        var el = root().querySelector("#alignment_page_token");
        if (el && el.getAttribute("data-token")) {
            return el.getAttribute("data-token");
        }
        var components = (window.gradio_config && window.gradio_config.components) || [];
        for (var i = 0; i < components.length; i++) {
            var value = components[i].props && components[i].props.value;
            if (typeof value === "string" && value.indexOf("alignment_page_token") >= 0) {
                var found = /data-token="([^"]+)"/.exec(value);
                if (found) {
                    return found[1];
                }
            }
        }
        return "";
    }

    function asDataUrl(src) {
        return fetch(src).then(function (response) {
            return response.blob();
        }).then(function (blob) {
            return new Promise(function (resolve) {
                var reader = new FileReader();
                reader.onload = function () { resolve(reader.result); };
                reader.readAsDataURL(blob);
            });
        });
    }

    // ----- acting --------------------------------------------------------------------------------

    function say(tab, text, kind, entry) {
        var status = root().querySelector("#alignment_likes_" + tab + " .alignment-likes-status");
        if (!status) {
            return;
        }
        status.textContent = text;
        status.setAttribute("data-kind", kind || "");
        status.setAttribute("data-entry", entry === undefined || entry === null ? "" : String(entry));
        var undo = root().querySelector("#alignment_likes_" + tab + " .alignment-likes-undo");
        if (undo) {
            undo.style.display = kind === "ok" && entry !== undefined && entry !== null ? "" : "none";
        }
    }

    function post(path, body) {
        var headers = { "Content-Type": "application/json" };
        var token = pageToken();
        if (token) {
            headers["X-Alignment-Page-Token"] = token;
        }
        return fetch(new URL(path, window.location.href).toString(), {
            method: "POST",
            headers: headers,
            credentials: "same-origin",
            body: JSON.stringify(body)
        }).then(function (response) {
            return response.json().catch(function () { return {}; }).then(function (data) {
                if (!response.ok) {
                    var detail = data && data.detail;
                    throw new Error(typeof detail === "string" ? detail : "HTTP " + response.status);
                }
                return data;
            });
        });
    }

    function act(tab, action) {
        var el = gallery(tab);
        if (!el || state.busy) {
            return;
        }
        var thumbs = thumbnails(el);
        var index = shownIndex(el, thumbs);
        if (!thumbs.length) {
            say(tab, "No image to label yet", "error");
            return;
        }
        if (index < 0) {
            say(tab, "Click an image first", "error");
            return;
        }
        var srcs = thumbs.map(function (img) { return img.getAttribute("src") || ""; });
        var needed = action === "prefer" ? srcs.map(function (_, i) { return i; }) : [index];
        var images = srcs.map(function (src) { return { src: new URL(src, window.location.href).toString() }; });
        state.busy = true;
        say(tab, "Saving…", "busy");
        // Images the WebUI holds no file for (data: or blob: URLs) travel as bytes.
        var pending = needed.filter(function (i) { return /^(data|blob):/.test(srcs[i]); }).map(function (i) {
            return asDataUrl(srcs[i]).then(function (data) { images[i].data = data; });
        });
        Promise.all(pending).then(function () {
            return post(ROUTE, {
                action: action,
                index: index,
                tab: tab,
                images: images,
                generation_info: fieldText("generation_info_" + tab),
                infotext: fieldText("html_info_" + tab)
            });
        }).then(function (data) {
            say(tab, data.message || "Saved ✓", "ok", data.entry);
        }).catch(function (error) {
            say(tab, "Not saved: " + error.message, "error");
        }).then(function () {
            state.busy = false;
        });
    }

    function undo(tab) {
        var status = root().querySelector("#alignment_likes_" + tab + " .alignment-likes-status");
        var entry = status && parseInt(status.getAttribute("data-entry"), 10);
        if (!entry && entry !== 0) {
            return;
        }
        post(ROUTE + "/undo", { entry: entry }).then(function () {
            say(tab, "Undone", "undone");
        }).catch(function (error) {
            say(tab, "Undo failed: " + error.message, "error");
        });
    }

    // ----- the row ---------------------------------------------------------------------------------

    function makeButton(tab, action) {
        var button = document.createElement("button");
        button.type = "button";
        button.className = "alignment-likes-button";
        button.id = "alignment_" + action + "_" + tab;
        button.textContent = LABELS[action];
        button.title = TIPS[action];
        button.addEventListener("click", function (event) {
            event.preventDefault();
            state.lastTab = tab;
            act(tab, action);
        });
        return button;
    }

    function attach(tab) {
        var el = gallery(tab);
        if (!el || root().querySelector("#alignment_likes_" + tab)) {
            return;
        }
        var row = document.createElement("div");
        row.id = "alignment_likes_" + tab;
        row.className = "alignment-likes";
        ["like", "dislike", "prefer"].forEach(function (action) {
            row.appendChild(makeButton(tab, action));
        });
        var status = document.createElement("span");
        status.className = "alignment-likes-status";
        status.setAttribute("aria-live", "polite");
        row.appendChild(status);
        var undoLink = document.createElement("button");
        undoLink.type = "button";
        undoLink.className = "alignment-likes-undo";
        undoLink.textContent = "Undo";
        undoLink.style.display = "none";
        undoLink.addEventListener("click", function () { undo(tab); });
        row.appendChild(undoLink);
        // After the WebUI's own button row when there is one, else after the gallery's container.
        var anchor = root().querySelector("#image_buttons_" + tab) || root().querySelector("#" + tab + "_gallery_container") || el;
        anchor.insertAdjacentElement("afterend", row);
    }

    // Keys: the gallery "has focus" when focus is inside it or our row, or the last click was there.
    function tabOf(node) {
        for (var i = 0; i < TABS.length; i++) {
            var tab = TABS[i];
            var g = gallery(tab);
            var row = root().querySelector("#alignment_likes_" + tab);
            if (node && ((g && g.contains(node)) || (row && row.contains(node)))) {
                return tab;
            }
        }
        return null;
    }

    function eventTarget(event) {
        var path = event.composedPath ? event.composedPath() : [];
        return path.length ? path[0] : event.target;
    }

    document.addEventListener("pointerdown", function (event) {
        state.lastTab = tabOf(eventTarget(event));
    }, true);

    document.addEventListener("keydown", function (event) {
        if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) {
            return;
        }
        var action = KEYS[(event.key || "").toLowerCase()];
        if (!action) {
            return;
        }
        var target = eventTarget(event);
        if (target && target.matches && target.matches("input, textarea, select, [contenteditable=true]")) {
            return;
        }
        var active = document.activeElement;
        var tab = tabOf(target) || tabOf(active);
        if (!tab && (!active || active === document.body) && state.lastTab) {
            tab = state.lastTab;
        }
        var g = tab && gallery(tab);
        if (!g || !g.getClientRects().length) {
            return;
        }
        event.preventDefault();
        act(tab, action);
    });

    // The Curate tab's keys while its pair is on show: 1 = left is better, 2 = right, S = skip, U = undo.
    var CURATE_KEYS = { "1": "pick_left", "2": "pick_right", s: "skip", u: "undo" };
    document.addEventListener("keydown", function (event) {
        var name = CURATE_KEYS[(event.key || "").toLowerCase()];
        var left = root().querySelector("#alignment_curate_pick_left");
        if (!name || !left || !left.getClientRects().length || event.ctrlKey || event.metaKey || event.altKey || event.repeat) {
            return;
        }
        var target = eventTarget(event);
        if (target && target.matches && target.matches("input, textarea, select, [contenteditable=true]")) {
            return;
        }
        var el = root().querySelector("#alignment_curate_" + name);
        var button = el && (el.tagName === "BUTTON" ? el : el.querySelector("button"));
        if (button && !button.disabled) {
            event.preventDefault();
            button.click();
        }
    });

    setInterval(function () {
        TABS.forEach(attach);
    }, 1000);
})();

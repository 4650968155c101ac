// Alignment extension: the Rank & Refine tab's ranking in the page.
// Loaded by the WebUI into the page head, and by the standalone app through gradio's head.
//
// Plain DOM listeners on `document` (event delegation), so they survive gradio re-rendering the
// board and work the same under gradio 3.41, 4.40 and current releases. The ranking lives here
// until Next: it is written as {"round", "order"} into a hidden textbox, which the Next handler
// reads. The session id is remembered in localStorage so a reload resumes the session.
(function () {
    "use strict";
    if (window.alignmentExtension) {
        return;
    }
    var ID = "alignment_rank_refine";
    var STORE_SESSION = "alignmentRefine.session";
    var STORE_BEST_ONLY = "alignmentRefine.bestOnly";
    var SESSION_ID = /^[0-9a-f]{32}$/;
    // Buttons whose requests may generate: in the WebUI they get a task id for its progress bar.
    var ACTIONS = ["start", "next", "reset", "save"];
    var state = { board: null, render: null, key: "", picks: [], busy: false, drag: null, suppressClick: false, resumeTried: false };

    // gradio mounts inside a shadow root in some versions; find our elements either way.
    function root() {
        var app = document.querySelector("gradio-app");
        return app && app.shadowRoot ? app.shadowRoot : document;
    }

    function byId(name) {
        return root().querySelector("#" + ID + "_" + name);
    }

    function field(name) {
        var el = byId(name);
        if (!el || el.matches("textarea, input")) {
            return el;
        }
        return el.querySelector("textarea") || el.querySelector("input[type=number]") || el.querySelector("input");
    }

    function button(name) {
        var el = byId(name);
        if (!el || el.tagName === "BUTTON") {
            return el;
        }
        return el.querySelector("button");
    }

    function setValue(el, value) {
        if (!el) {
            return;
        }
        el.value = value;
        el.dispatchEvent(new Event("input", { bubbles: true }));
    }

    function storage(key, value) {
        try {
            if (value === undefined) {
                return window.localStorage.getItem(key);
            }
            if (value === null) {
                window.localStorage.removeItem(key);
            } else {
                window.localStorage.setItem(key, value);
            }
        } catch (error) {
            return null; // storage disabled: resuming then goes through the session list
        }
        return null;
    }

    function target(event) {
        var path = event.composedPath ? event.composedPath() : [];
        return path.length ? path[0] : event.target;
    }

    function closest(el, selector) {
        return el && el.closest ? el.closest(selector) : null;
    }

    function visible(el) {
        return !!el && el.getClientRects().length > 0;
    }

    function tiles() {
        return state.board ? Array.prototype.slice.call(state.board.querySelectorAll(".alignment-tile")) : [];
    }

    function bestOnly() {
        return storage(STORE_BEST_ONLY) === "1";
    }

    // ----- the board: follow re-renders, draw badges and the ranking strip ---------------------

    function sync() {
        var board = root().querySelector(".alignment-board");
        // gradio 3/4 replace the board's node, current gradio may patch it in place: a new
        // rendering is told by its data-render value.
        if (board && (board !== state.board || board.getAttribute("data-render") !== state.render)) {
            state.board = board;
            state.render = board.getAttribute("data-render");
            state.busy = false;
            var key = (board.getAttribute("data-session") || "") + "/" + (board.getAttribute("data-round") || "");
            if (key !== state.key) {
                state.key = key;
                // A scorer's order arrives as the ranking to correct (scorer-assisted rounds).
                var suggested = (board.getAttribute("data-suggested") || "").split(",").filter(function (item) {
                    return /^\d+$/.test(item);
                });
                state.picks = suggested.map(Number);
            }
            var session = board.getAttribute("data-session");
            if (session) {
                storage(STORE_SESSION, session);
            } else if (board.getAttribute("data-forget") === "1") {
                storage(STORE_SESSION, null);
            }
            render();
        } else if (board && badgesStale()) {
            // gradio 4 can patch the tiles inside the same board (same data-render): the badges drawn
            // on the old tiles are gone, so draw them again (read-only check first: no mutation loop).
            render();
        }
        autoResume();
        syncTraining();
    }

    // A tile's place in the user's ranking (-1: not picked) and the badge text that shows it.
    function rankOf(tile) {
        return state.picks.indexOf(Number(tile.getAttribute("data-index")));
    }

    function badgeText(rank) {
        return rank >= 0 ? String(rank + 1) : "";
    }

    function badgesStale() {
        return tiles().some(function (tile) {
            var rank = rankOf(tile);
            var badge = tile.querySelector(".alignment-rank-badge");
            return !!badge && (badge.hidden !== (rank < 0) || badge.textContent !== badgeText(rank));
        });
    }

    // Start and Reset: the new round appears on the board, which may be off screen (below the settings on a
    // narrow page, above them on a short one): bring it into view while it is being generated.
    function showBoard() {
        var board = state.board || byId("board");
        if (!board || !board.getBoundingClientRect) {
            return;
        }
        var box = board.getBoundingClientRect();
        if (box.top < 0 || box.top > window.innerHeight * 0.5) {
            board.scrollIntoView({ block: "start", behavior: "smooth" });
        }
    }

    // The training tab: the log box follows its newest line; the chosen method survives a reload.
    var STORE_METHOD = "alignmentTraining.method";
    var training = { log: null, methodRestored: false };

    function syncTraining() {
        var r = root();
        var log = r.querySelector("#alignment_training_log textarea");
        if (log && log.value !== training.log) {
            training.log = log.value;
            log.scrollTop = log.scrollHeight;
        }
        var method = r.querySelector("#alignment_training_method");
        if (method && !training.methodRestored) {
            training.methodRestored = true;
            var wanted = storage(STORE_METHOD);
            var input = wanted && method.querySelector('input[type="radio"][value="' + wanted.replace(/"/g, "") + '"]');
            if (input && !input.checked) {
                input.click();
            }
        }
    }

    function render() {
        var board = state.board;
        if (!board) {
            return;
        }
        tiles().forEach(function (tile) {
            var rank = rankOf(tile);
            var badge = tile.querySelector(".alignment-rank-badge");
            tile.classList.toggle("alignment-picked", rank >= 0);
            tile.setAttribute("aria-pressed", rank >= 0 ? "true" : "false");
            if (badge) {
                badge.hidden = rank < 0;
                badge.textContent = badgeText(rank);
            }
        });
        var strip = board.querySelector(".alignment-ranking");
        if (strip) {
            strip.textContent = "";
            if (!state.picks.length) {
                var empty = document.createElement("span");
                empty.className = "alignment-ranking-empty";
                empty.textContent = "nothing picked yet";
                strip.appendChild(empty);
            }
            state.picks.forEach(function (index, rank) {
                var source = board.querySelector('.alignment-tile[data-index="' + index + '"] img');
                var chip = document.createElement("span");
                chip.className = "alignment-chip";
                chip.setAttribute("data-index", String(index));
                chip.title = "Rank " + (rank + 1) + ": candidate " + (index + 1) + " (drag to reorder, click to remove)";
                var img = document.createElement("img");
                img.src = source ? source.src : "";
                img.alt = "Candidate " + (index + 1);
                img.draggable = false;
                var number = document.createElement("span");
                number.className = "alignment-chip-rank";
                number.textContent = String(rank + 1);
                chip.appendChild(img);
                chip.appendChild(number);
                strip.appendChild(chip);
            });
        }
        var box = board.querySelector(".alignment-best-only");
        if (box) {
            box.checked = bestOnly();
        }
        board.classList.toggle("alignment-busy", state.busy);
        writeOrder();
    }

    function writeOrder() {
        var box = field("order");
        if (!box || !state.board) {
            return;
        }
        var value = state.picks.length ? JSON.stringify({ round: Number(state.board.getAttribute("data-round")), order: state.picks }) : "";
        if (box.value !== value) {
            setValue(box, value);
        }
    }

    // ----- ranking actions ----------------------------------------------------------------------

    function toggle(index) {
        if (state.busy || !state.board || index >= tiles().length) {
            return;
        }
        if (bestOnly()) {
            state.picks = [index];
            render();
            submit();
            return;
        }
        var rank = state.picks.indexOf(index);
        if (rank >= 0) {
            state.picks.splice(rank, 1);
        } else {
            state.picks.push(index);
        }
        render();
    }

    function submit() {
        var board = state.board;
        if (!board || state.busy || !board.getAttribute("data-session")) {
            return false;
        }
        if (!state.picks.length) {
            board.classList.remove("alignment-nudge");
            void board.offsetWidth; // restart the animation
            board.classList.add("alignment-nudge");
            return false;
        }
        writeOrder();
        var next = button("next");
        if (!next) {
            return false;
        }
        state.busy = true;
        board.classList.add("alignment-busy");
        // Let gradio take the textbox's new value before the click reads it.
        setTimeout(function () {
            next.click();
        }, 50);
        return true;
    }

    // `a` takes the place of `b` in the ranking (dropping onto an unranked image just ranks `a`).
    function moveTo(a, b) {
        if (a === b) {
            return;
        }
        var picks = state.picks.slice();
        var from = picks.indexOf(a);
        var to = picks.indexOf(b);
        if (to < 0) {
            if (from < 0) {
                picks.push(a);
            }
        } else {
            if (from >= 0) {
                picks.splice(from, 1);
            }
            var at = picks.indexOf(b);
            picks.splice(from >= 0 && from < to ? at + 1 : at, 0, a);
        }
        state.picks = picks;
        render();
    }

    function moveToEnd(a) {
        state.picks = state.picks.filter(function (i) {
            return i !== a;
        });
        state.picks.push(a);
        render();
    }

    // ----- WebUI niceties: its progress bar, copying txt2img's fields ---------------------------

    function webuiProgress() {
        if (typeof window.requestProgress !== "function" || typeof window.randomId !== "function") {
            return;
        }
        var anchor = byId("progress_anchor");
        var task = field("task");
        if (!anchor || !task) {
            return;
        }
        var id = window.randomId();
        setValue(task, id);
        window.requestProgress(id, anchor, null, function () {});
    }

    function pullFromTxt2img() {
        var pairs = [
            ["txt2img_prompt", "prompt"],
            ["txt2img_neg_prompt", "negative"],
            ["txt2img_steps", "steps"],
            ["txt2img_cfg_scale", "cfg"],
            ["txt2img_seed", "seed"],
            ["txt2img_width", "width"],
            ["txt2img_height", "height"],
        ];
        pairs.forEach(function (pair) {
            var source = root().querySelector("#" + pair[0]);
            if (source && !source.matches("textarea, input")) {
                source = source.querySelector("textarea") || source.querySelector("input[type=number]") || source.querySelector("input");
            }
            var destination = field(pair[1]);
            if (source && destination) {
                setValue(destination, source.value);
            }
        });
    }

    // ----- resume after a reload ----------------------------------------------------------------

    function autoResume() {
        if (state.resumeTried) {
            return;
        }
        var sessionBox = field("session");
        var resume = button("auto_resume");
        if (!sessionBox || !resume || !state.board) {
            return;
        }
        state.resumeTried = true;
        var saved = storage(STORE_SESSION);
        if (!saved || !SESSION_ID.test(saved) || sessionBox.value || state.board.getAttribute("data-session")) {
            return;
        }
        setTimeout(function () {
            setValue(sessionBox, saved);
            setTimeout(function () {
                resume.click();
            }, 50);
        }, 300);
    }

    // ----- listeners (delegated) ----------------------------------------------------------------

    document.addEventListener(
        "click",
        function (event) {
            // Before gradio's own handler reads the inputs: a task id for the WebUI's progress bar.
            var el = target(event);
            for (var i = 0; i < ACTIONS.length; i++) {
                var action = byId(ACTIONS[i]);
                if (action && (action === el || action.contains(el))) {
                    if (ACTIONS[i] !== "save" && state.board) {
                        state.busy = true;
                        state.board.classList.add("alignment-busy");
                    }
                    if (ACTIONS[i] === "start" || ACTIONS[i] === "reset") {
                        showBoard();
                    }
                    webuiProgress();
                    return;
                }
            }
        },
        true
    );

    document.addEventListener("click", function (event) {
        sync();
        var el = target(event);
        if (state.suppressClick) {
            state.suppressClick = false;
            return;
        }
        var pull = byId("pull");
        if (pull && (pull === el || pull.contains(el))) {
            pullFromTxt2img();
            return;
        }
        if (!state.board || !state.board.contains(el)) {
            return;
        }
        var chip = closest(el, ".alignment-chip");
        if (chip) {
            var index = Number(chip.getAttribute("data-index"));
            state.picks = state.picks.filter(function (i) {
                return i !== index;
            });
            render();
            return;
        }
        var tile = closest(el, ".alignment-tile");
        if (tile) {
            toggle(Number(tile.getAttribute("data-index")));
            return;
        }
        if (closest(el, ".alignment-clear")) {
            state.picks = [];
            render();
        }
    });

    document.addEventListener("change", function (event) {
        var el = target(event);
        if (el && el.classList && el.classList.contains("alignment-best-only")) {
            storage(STORE_BEST_ONLY, el.checked ? "1" : "0");
        }
        if (el && el.type === "radio" && closest(el, "#alignment_training_method")) {
            storage(STORE_METHOD, el.value);
        }
    });

    document.addEventListener("keydown", function (event) {
        sync();
        var board = state.board;
        if (!board || !visible(board) || !board.getAttribute("data-session") || event.ctrlKey || event.metaKey || event.altKey) {
            return;
        }
        var el = target(event) || {};
        var tag = el.tagName || "";
        var typing = el.isContentEditable || tag === "TEXTAREA" || tag === "SELECT" || (tag === "INPUT" && el.type !== "checkbox");
        if (typing) {
            return; // keys belong to the field being edited
        }
        if ((tag === "BUTTON" || tag === "INPUT") && (event.key === "Enter" || event.key === " ")) {
            return; // the focused button or checkbox does its own thing
        }
        if (/^[1-9]$/.test(event.key)) {
            var index = Number(event.key) - 1;
            if (index < tiles().length) {
                event.preventDefault();
                toggle(index);
            }
        } else if (event.key === " " && el.classList && el.classList.contains("alignment-tile")) {
            event.preventDefault();
            toggle(Number(el.getAttribute("data-index")));
        } else if (event.key === "Backspace") {
            if (state.picks.length && !state.busy) {
                event.preventDefault();
                state.picks.pop();
                render();
            }
        } else if (event.key === "Enter") {
            if (submit()) {
                event.preventDefault();
            }
        } else if (event.key === "Escape" && state.picks.length) {
            state.picks = [];
            render();
        }
    });

    // The training tab's blind A/B comparison: 1 / 2 / space pick "A is better" / "B is better" / "Skip".
    var AB_KEYS = { "1": "pick_a", "2": "pick_b", " ": "pick_skip" };
    document.addEventListener("keydown", function (event) {
        var judge = root().querySelector("#alignment_training_ab_judge");
        var name = AB_KEYS[event.key];
        if (!name || !judge || !visible(judge) || event.ctrlKey || event.metaKey || event.altKey) {
            return;
        }
        var el = target(event) || {};
        var tag = el.tagName || "";
        if (el.isContentEditable || tag === "TEXTAREA" || tag === "SELECT" || tag === "INPUT" || (tag === "BUTTON" && event.key === " ")) {
            return; // keys belong to the field being edited, space to the focused button
        }
        var b = root().querySelector("#alignment_training_ab_" + name);
        b = b && b.tagName !== "BUTTON" ? b.querySelector("button") : b;
        if (b && !b.disabled) {
            event.preventDefault();
            b.click();
        }
    });

    // Drag to reorder, with pointer events (mouse, pen and touch on the ranking strip).
    function itemAt(x, y) {
        var r = root();
        var el = r.elementFromPoint ? r.elementFromPoint(x, y) : document.elementFromPoint(x, y);
        if (!el || !state.board || !state.board.contains(el)) {
            return null;
        }
        return closest(el, ".alignment-tile, .alignment-chip") || closest(el, ".alignment-ranking");
    }

    function clearDropMarks() {
        if (state.board) {
            state.board.querySelectorAll(".alignment-drop-target").forEach(function (el) {
                el.classList.remove("alignment-drop-target");
            });
        }
    }

    document.addEventListener("pointerdown", function (event) {
        sync();
        if (event.button !== 0 || state.busy || !state.board) {
            return;
        }
        var item = closest(target(event), ".alignment-tile, .alignment-chip");
        if (!item || !state.board.contains(item)) {
            return;
        }
        state.drag = { index: Number(item.getAttribute("data-index")), x: event.clientX, y: event.clientY, item: item, ghost: null };
    });

    document.addEventListener("pointermove", function (event) {
        var drag = state.drag;
        if (!drag) {
            return;
        }
        if (!drag.ghost) {
            if (Math.abs(event.clientX - drag.x) + Math.abs(event.clientY - drag.y) < 8) {
                return;
            }
            var img = drag.item.querySelector("img");
            drag.ghost = document.createElement("img");
            drag.ghost.className = "alignment-drag-ghost";
            drag.ghost.src = img ? img.src : "";
            (state.board || document.body).appendChild(drag.ghost);
            drag.item.classList.add("alignment-dragging");
        }
        event.preventDefault();
        drag.ghost.style.left = event.clientX + 6 + "px";
        drag.ghost.style.top = event.clientY + 6 + "px";
        clearDropMarks();
        var over = itemAt(event.clientX, event.clientY);
        if (over && over !== drag.item) {
            over.classList.add("alignment-drop-target");
        }
    });

    function endDrag(event, cancelled) {
        var drag = state.drag;
        state.drag = null;
        if (!drag || !drag.ghost) {
            return;
        }
        drag.ghost.remove();
        drag.item.classList.remove("alignment-dragging");
        clearDropMarks();
        state.suppressClick = true;
        setTimeout(function () {
            state.suppressClick = false;
        }, 0);
        if (cancelled) {
            return;
        }
        var over = itemAt(event.clientX, event.clientY);
        if (!over) {
            return;
        }
        if (over.classList.contains("alignment-ranking")) {
            moveToEnd(drag.index);
        } else {
            moveTo(drag.index, Number(over.getAttribute("data-index")));
        }
    }

    document.addEventListener("pointerup", function (event) {
        endDrag(event, false);
    });
    document.addEventListener("pointercancel", function (event) {
        endDrag(event, true);
    });

    function observe() {
        var pending = false;
        var observer = new MutationObserver(function () {
            if (!pending) {
                pending = true;
                setTimeout(function () {
                    pending = false;
                    sync();
                }, 30);
            }
        });
        observer.observe(document.documentElement, { childList: true, subtree: true });
        var r = root();
        if (r !== document) {
            observer.observe(r, { childList: true, subtree: true });
        }
        setInterval(sync, 1000); // safety net, e.g. a shadow root attached after this ran
    }

    window.alignmentExtension = {
        version: 2,
        root: root,
        // For tests and other scripts: the ranking shown now, best first (display indices).
        ranking: function () {
            sync();
            return state.picks.slice();
        },
        submit: submit,
    };
    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", observe);
    } else {
        observe();
    }
})();

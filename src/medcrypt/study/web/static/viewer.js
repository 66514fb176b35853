// medcrypt reader study: the image viewer (window/level, zoom, pan) of the reader's page.
// Drag = window/level; middle-button drag, or Space + drag = pan a zoomed image; wheel and
// + / - = zoom; R = reset. Window/level and zoom start afresh on every image unless the
// reader ticks "Keep window/level and zoom".
"use strict";
window.MedcryptViewer = (function () {
  const $ = (id) => document.getElementById(id);
  const view = { width: 256, level: 128, zoom: 1, drag: null, space: false, img: null };

  function reset() {
    view.width = 256;
    view.level = 128;
    view.zoom = 1;
  }

  function render() {
    const img = view.img;
    const canvas = $("image");
    if (!img) return;
    const stage = $("stage");
    const fit = Math.max(1, Math.floor(Math.min(stage.clientWidth / img.w, stage.clientHeight / img.h)));
    const scale = fit * view.zoom;
    canvas.width = img.w;
    canvas.height = img.h;
    canvas.style.width = img.w * scale + "px";
    canvas.style.height = img.h * scale + "px";
    const ctx = canvas.getContext("2d");
    const out = ctx.createImageData(img.w, img.h);
    const low = view.level - view.width / 2;
    const lut = new Uint8ClampedArray(256);
    for (let v = 0; v < 256; v++) lut[v] = ((v - low) / view.width) * 255;
    for (let i = 0; i < img.gray.length; i++) {
      const g = lut[img.gray[i]];
      out.data[4 * i] = g;
      out.data[4 * i + 1] = g;
      out.data[4 * i + 2] = g;
      out.data[4 * i + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
    $("zoom").textContent = Math.round(view.zoom * 100) + "%";
    $("wl").textContent = "Window " + Math.round(view.width) + " \u00b7 level " + Math.round(view.level);
  }

  // Show a new image: window/level and zoom start afresh unless the reader keeps them.
  function show(img, sameImage) {
    if (!sameImage && !$("carry-view").checked) reset();
    view.img = img;
    render();
  }

  function zoom(factor) {
    const stage = $("stage");
    // keep the point at the centre of the view where it is
    const cx = (stage.scrollLeft + stage.clientWidth / 2) / Math.max(1, stage.scrollWidth);
    const cy = (stage.scrollTop + stage.clientHeight / 2) / Math.max(1, stage.scrollHeight);
    view.zoom = Math.max(0.25, Math.min(8, view.zoom * factor));
    render();
    stage.scrollLeft = cx * stage.scrollWidth - stage.clientWidth / 2;
    stage.scrollTop = cy * stage.scrollHeight - stage.clientHeight / 2;
  }

  function key(e) {
    if (e.key === "+" || e.key === "=") zoom(1.25);
    else if (e.key === "-") zoom(0.8);
    else if (e.key === "r" || e.key === "R") {
      reset();
      render();
    } else return false;
    return true;
  }

  function wire(active) {
    const stage = $("stage");
    stage.addEventListener("pointerdown", (e) => {
      const pan = e.button === 1 || (e.button === 0 && view.space);
      if (e.button !== 0 && !pan) return;
      e.preventDefault();
      view.drag = {
        pan: pan,
        x: e.clientX,
        y: e.clientY,
        width: view.width,
        level: view.level,
        left: stage.scrollLeft,
        top: stage.scrollTop,
      };
      stage.classList.toggle("panning", pan);
      stage.setPointerCapture(e.pointerId);
    });
    stage.addEventListener("pointermove", (e) => {
      const d = view.drag;
      if (!d) return;
      if (d.pan) {
        stage.scrollLeft = d.left - (e.clientX - d.x);
        stage.scrollTop = d.top - (e.clientY - d.y);
        return;
      }
      view.width = Math.max(1, Math.min(512, d.width + (e.clientX - d.x)));
      view.level = Math.max(0, Math.min(255, d.level - (e.clientY - d.y) / 2));
      render();
    });
    const end = () => {
      view.drag = null;
      stage.classList.remove("panning");
    };
    stage.addEventListener("pointerup", end);
    stage.addEventListener("pointercancel", end);
    stage.addEventListener("auxclick", (e) => e.button === 1 && e.preventDefault());
    stage.addEventListener("mousedown", (e) => e.button === 1 && e.preventDefault()); // no autoscroll
    stage.addEventListener("wheel", (e) => {
      e.preventDefault();
      zoom(e.deltaY < 0 ? 1.1 : 1 / 1.1);
    }, { passive: false });
    document.addEventListener("keydown", (e) => {
      if (e.key === " " && active()) {
        view.space = true;
        stage.classList.add("can-pan");
        e.preventDefault();
      }
    });
    document.addEventListener("keyup", (e) => {
      if (e.key === " ") {
        view.space = false;
        stage.classList.remove("can-pan");
      }
    });
    window.addEventListener("resize", () => active() && render());
    $("zoom-in").addEventListener("click", () => zoom(1.25));
    $("zoom-out").addEventListener("click", () => zoom(0.8));
    $("reset").addEventListener("click", () => {
      reset();
      render();
    });
  }

  return { show: show, key: key, wire: wire, render: render };
})();

/* gliomaseg case report: the interactive viewer (NiiVue, embedded in this page).
 * Reads #viewer-data (volumes as base64 gzip NIfTI, label colours, review slices), unpacks
 * the NiiVue bundle from #niivue-bundle (gzip + base64) with DecompressionStream, and wires
 * the controls. Nothing is fetched: every byte is in the page. On failure the status line
 * says why and the static figures below remain. */
(function () {
  "use strict";
  var root = document.getElementById("viewer-app");
  if (!root) { return; }
  var status = document.getElementById("viewer-status");

  function say(text) { status.textContent = text; }
  function fail(text) { root.dataset.state = "failed"; say(text + " The static figures below show the case."); }

  function bytesOf(b64) {
    var text = atob(b64.replace(/\s+/g, ""));
    var out = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) { out[i] = text.charCodeAt(i); }
    return out;
  }

  async function gunzipText(bytes) {
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return await new Response(stream).text();
  }

  async function loadNiivue() {
    if (window.niivue) { return window.niivue; }
    var packed = document.getElementById("niivue-bundle");
    var script = document.createElement("script");
    script.textContent = await gunzipText(bytesOf(packed.textContent));
    document.head.appendChild(script);
    if (!window.niivue) { throw new Error("the NiiVue bundle did not define window.niivue"); }
    return window.niivue;
  }

  function rgb(hex) {
    var n = parseInt(hex.replace("#", ""), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }

  function labelColormap(codes, shown) {
    var cm = { R: [0], G: [0], B: [0], A: [0], I: [0], labels: [""] };
    codes.forEach(function (c) {
      var v = rgb(c.colour);
      cm.R.push(v[0]); cm.G.push(v[1]); cm.B.push(v[2]);
      cm.A.push(shown[c.code] ? 255 : 0);
      cm.I.push(c.code);
      cm.labels.push(c.abbr);
    });
    return cm;
  }

  function toSource(grid, axis, index) {
    var n = grid.source_shape[axis], m = grid.shape[axis];
    return (m > 1 ? Math.round(index * (n - 1) / (m - 1)) : 0) + grid.start[axis];
  }

  async function start() {
    var data = JSON.parse(document.getElementById("viewer-data").textContent);
    if (typeof DecompressionStream === "undefined") {
      return fail("This browser cannot unpack the viewer (no DecompressionStream).");
    }
    if (!document.createElement("canvas").getContext("webgl2")) {
      return fail("WebGL2 is not available in this browser, so the viewer cannot start.");
    }
    var nvlib = await loadNiivue();
    var nv = new nvlib.Niivue({
      backColor: [0, 0, 0, 1],
      crosshairColor: [1, 1, 1, 0.5],
      isRadiologicalConvention: true,
      dragAndDropEnabled: false,
      loadingText: "",
      logLevel: "error",
      multiplanarShowRender: 0,
    });
    await nv.attachToCanvas(document.getElementById("viewer-canvas"));
    var images = [];
    for (var k = 0; k < data.images.length; k++) {
      var im = data.images[k];
      images.push(await nvlib.NVImage.loadFromBase64({
        base64: im.nifti, name: im.key + ".nii.gz", colormap: "gray",
        cal_min: 0, cal_max: 255, trustCalMinMax: true, opacity: k === 0 ? 1 : 0,
      }));
    }
    images.forEach(function (img) { nv.addVolume(img); });
    var seg = null, shown = {};
    if (data.labels) {
      seg = await nvlib.NVImage.loadFromBase64({
        base64: data.labels.nifti, name: "segmentation.nii.gz", opacity: 0.5,
      });
      data.labels.codes.forEach(function (c) { shown[c.code] = true; });
      seg.setColormapLabel(labelColormap(data.labels.codes, shown));
      nv.addVolume(seg);
    }
    nv.setSliceType(nv.sliceTypeMultiplanar);

    var names = {};
    if (data.labels) { data.labels.codes.forEach(function (c) { names[c.code] = c.name; }); }
    nv.onLocationChange = function (loc) {
      if (!loc || !loc.vox) { return; }
      var g = data.grid, label = "";
      if (seg && loc.values) {
        var at = loc.values[nv.volumes.indexOf(seg)];
        var code = at ? Math.round(at.value) : 0;
        label = "; predicted: " + (names[code] || "no tumour");
      }
      say("Crosshair: axial slice " + toSource(g, 2, loc.vox[2]) + ", voxel (" +
        toSource(g, 0, loc.vox[0]) + ", " + toSource(g, 1, loc.vox[1]) + ") of the case's " +
        "RAS+ grid (the summary's slice indices)" + label);
    };

    root.querySelectorAll('input[name="viewer-image"]').forEach(function (input) {
      input.addEventListener("change", function () {
        var chosen = images[Number(input.value)];
        images.forEach(function (img) { img.opacity = img === chosen ? 1 : 0; });
        nv.setVolume(chosen, 0);
      });
    });
    var viewButtons = root.querySelectorAll("button[data-slice-type]");
    function setView(type) {
      nv.setSliceType(type);
      viewButtons.forEach(function (b) {
        b.setAttribute("aria-pressed", String(Number(b.dataset.sliceType) === type));
      });
    }
    viewButtons.forEach(function (b) {
      b.addEventListener("click", function () { setView(Number(b.dataset.sliceType)); });
    });
    var opacity = document.getElementById("viewer-opacity");
    if (opacity && seg) {
      opacity.addEventListener("input", function () {
        nv.setOpacity(nv.volumes.indexOf(seg), Number(opacity.value) / 100);
      });
    }
    root.querySelectorAll("input[data-code]").forEach(function (box) {
      box.addEventListener("change", function () {
        shown[Number(box.dataset.code)] = box.checked;
        seg.setColormapLabel(labelColormap(data.labels.codes, shown));
        nv.updateGLVolume();
      });
    });
    root.querySelectorAll("button[data-bookmark]").forEach(function (b) {
      b.addEventListener("click", function () {
        var mark = data.bookmarks[Number(b.dataset.bookmark)];
        if (nv.opts.sliceType === nv.sliceTypeCoronal || nv.opts.sliceType === nv.sliceTypeSagittal) {
          setView(nv.sliceTypeAxial);
        }
        nv.scene.crosshairPos = nv.vox2frac(mark.voxel);
        nv.createOnLocationChange();
        nv.drawScene();
      });
    });
    window.gliomasegViewer = { nv: nv, images: images, segmentation: seg, data: data };
    nv.drawScene();
    nv.createOnLocationChange();
    root.dataset.state = "ready";
  }

  start().catch(function (err) {
    fail("The viewer could not start (" + (err && err.message ? err.message : err) + ").");
  });
})();

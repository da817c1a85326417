// Drag a rectangle on the original picture: its corners, in image pixels, fill the rule form.
(function () {
  var img = document.getElementById("original");
  if (!img) { return; }
  var start = null;
  function point(event) {
    var r = img.getBoundingClientRect();
    var sx = Number(img.dataset.columns) / r.width, sy = Number(img.dataset.rows) / r.height;
    return [Math.round((event.clientX - r.left) * sx), Math.round((event.clientY - r.top) * sy)];
  }
  img.addEventListener("mousedown", function (e) { e.preventDefault(); start = point(e); });
  img.addEventListener("mouseup", function (e) {
    if (!start) { return; }
    var end = point(e), f = function (id, v) { document.getElementById(id).value = v; };
    f("x0", Math.min(start[0], end[0])); f("y0", Math.min(start[1], end[1]));
    f("x1", Math.max(start[0], end[0])); f("y1", Math.max(start[1], end[1]));
    start = null;
  });
})();

// The console's only script (served at /.portcullis/admin/admin.js under the page's nonce):
// every page works without it; it asks before destructive actions, copies the policy test,
// and fills the tester from a recent user or a route.
export const ADMIN_SCRIPT = `'use strict';
document.addEventListener('submit', function (e) {
  var f = e.target;
  var q = f && f.getAttribute && f.getAttribute('data-confirm');
  if (q && !window.confirm(q)) e.preventDefault();
});
document.addEventListener('click', function (e) {
  var b = e.target && e.target.closest && e.target.closest('[data-copy]');
  if (!b) return;
  var src = document.getElementById(b.getAttribute('data-copy'));
  if (!src || !navigator.clipboard) return;
  navigator.clipboard.writeText(src.textContent || '').then(function () {
    b.textContent = 'Copied';
  });
});
document.addEventListener('change', function (e) {
  var t = e.target;
  if (!t || !t.id) return;
  var opt = t.options && t.options[t.selectedIndex];
  if (!opt) return;
  var set = function (id, v) {
    var el = document.getElementById(id);
    if (el && v !== null) el.value = v;
  };
  if (t.id === 'recent') {
    set('email', opt.getAttribute('data-email'));
    set('user', opt.getAttribute('data-user'));
    set('groups', opt.getAttribute('data-groups'));
  }
  if (t.id === 'route' && opt.getAttribute('data-url')) set('url', opt.getAttribute('data-url'));
});
`;

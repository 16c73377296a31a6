// Starts Swagger UI on /docs (bridge/web/docs.py). A file of its own, not an inline script,
// so the page's Content-Security-Policy allows the bridge's own scripts only. The URL of the
// OpenAPI document comes from the page: <div id="swagger-ui" data-openapi-url="...">.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    // No badge image from validator.swagger.io: the page asks nothing of another host.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();

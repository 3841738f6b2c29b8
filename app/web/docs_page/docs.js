// Swagger UI on this service's OpenAPI document. A file of its own: the page's policy runs no inline script.
window.addEventListener("load", () => {
  const container = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: container.dataset.specUrl,
    domNode: container,
    validatorUrl: null,  // Swagger UI would otherwise send the document's URL to validator.swagger.io
  });
});

"""The commands beside run: init (a starter config), inspect (an output summary and plots), make-example."""

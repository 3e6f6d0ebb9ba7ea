"""The composed config: where its files are (``paths``), its schema (``schema``) and the checks of
its values (``validation``)."""

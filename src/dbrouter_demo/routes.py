def includeme(config):
    config.add_route("home", "/")
    config.add_route("archive", "/albums/{id}/archive")

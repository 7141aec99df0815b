def includeme(config):
    config.add_route("home", "/")
    config.add_route("new_album", "/albums/new")
    config.add_route("search", "/search")
    # {tenant}: the tenant plugin's request.tenant (an unknown or invalid
    # album name is a 404 before any file is touched)
    config.add_route("album", "/albums/{tenant}")
    config.add_route("add_pic", "/albums/{tenant}/pics")
    config.add_route("pic", "/albums/{tenant}/pics/{id}")
    config.add_route("archive", "/albums/{tenant}/archive")

"""Request routing: pure policies over replica views, the router that books them, replay."""

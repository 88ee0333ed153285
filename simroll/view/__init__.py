"""Views: the text report, the HTML page and the plots. They read results; they run nothing."""

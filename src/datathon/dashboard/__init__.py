"""The dashboard's process (`datathon serve`), as a part of the event: `up` starts it, `status` shows it, `down`
stops it. What it serves lives in datathon.web; this part only knows where and whether it runs."""

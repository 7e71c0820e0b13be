"""Per-user limits that span several domains (what a user keeps in the object store).

The job-count quotas live with the jobs (`app.jobs.admission`), the mail caps with the mail
(`app.notifications.policy`)."""

/* Where a migration's files live on this host: the agents' status files,
 * the source's operator socket, the result (DIR made 0700). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "faultline/migrate.h"

static char *path_in(const char *dir, const char *id, const char *suffix)
{
	char *p = NULL;

	if (!dir)
		return NULL;
	mkdir(dir, 0700);
	if (asprintf(&p, "%s/%s.%s", dir, id, suffix) < 0)
		return NULL;
	return p;
}

char *fl_migration_status_path(const char *dir, const char *id, const char *role)
{
	char suffix[32];

	snprintf(suffix, sizeof(suffix), "%s.json", role);
	return path_in(dir, id, suffix);
}

char *fl_migration_ctl_path(const char *dir, const char *id)
{
	return path_in(dir, id, "source.sock");
}

char *fl_migration_restart_path(const char *dir, const char *id, const char *role)
{
	char suffix[32];

	snprintf(suffix, sizeof(suffix), "%s.restart", role);
	return path_in(dir, id, suffix);
}

char *fl_migration_dest_ctl_path(const char *dir, const char *id)
{
	return path_in(dir, id, "dest.sock");
}

/*
 * test_cq: completion queues as an event loop drives them, through the fd
 * and hkx_cq_poll alone.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <hkx.h>

#include "support.h"

/* Whether the cq's fd is readable now, as a level-triggered loop sees it. */
static bool
readable(const hkx_cq *cq)
{
	struct pollfd pfd = { .fd = hkx_cq_fd(cq), .events = POLLIN };
	int n = poll(&pfd, 1, 0);

	ck_assert_int_ge(n, 0);
	return n == 1 && (pfd.revents & POLLIN);
}

static hkx_cq *
new_cq(hkx_executor *ex)
{
	hkx_cq *cq = NULL;

	ck_assert_int_eq(hkx_cq_new(ex, &cq), 0);
	ck_assert_ptr_nonnull(cq);
	return cq;
}

START_TEST(test_submit_into_cq)
{
	hkx_executor *ex = tst_executor(1, 0);
	hkx_cq *cq = new_cq(ex);
	struct hkx_opts o = { .cq = cq, .cq_user = &o };
	struct hkx_completion c[2];
	hkx_future *f = tst_submit_opts(ex, "echo", "x", 1, &o);

	ck_assert_int_eq(hkx_cq_wait(cq, TST_DEADLINE_MS), 0);
	ck_assert(readable(cq));
	ck_assert_int_eq(hkx_cq_poll(cq, c, 2), 1);
	ck_assert_ptr_eq(c[0].future, f);
	ck_assert_ptr_eq(c[0].user, &o);
	ck_assert_int_eq(hkx_future_state(f), HKX_DONE);
	ck_assert(!readable(cq));
	ck_assert_int_eq(hkx_cq_poll(cq, c, 2), 0);
	hkx_future_release(c[0].future);
	hkx_future_release(f);
	hkx_cq_free(cq);
	hkx_executor_free(ex);
}
END_TEST

static Suite *
cq_suite(void)
{
	Suite *s = suite_create("cq");
	TCase *tc;

	tc = tst_tcase("basics");
	tcase_add_test(tc, test_submit_into_cq);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tst_run(cq_suite());
}

/**
 * Each verb's own help (`fanout VERB --help`, `fanout help VERB`), for the verbs that drive an
 * API and the small local ones; `run`, `dev` and `demo` keep theirs beside their code.
 */
const API_OPTION = `  --api URL    the API (default $FANOUT_API_URL, else http://127.0.0.1:3000, i.e. fanout dev);
               a deployment's requests are signed with SigV4 from the standard AWS credentials
  -h, --help   show this help`;

const EXIT_CODES = 'Exit codes: 0 ok, 1 the job or the request failed, 2 usage error.';

const verb = (usage: string, what: string, options = '') =>
  `Usage: fanout ${usage}

${what}

Options:
${options}${API_OPTION}

${EXIT_CODES}
`;

export const VERB_HELP: Record<string, string> = {
  upload: verb(
    'upload <file> [key] [--api URL]',
    'Uploads a local file as a dataset under datasets/ (key: the file name by default), by a\npresigned PUT, or presigned multipart parts above 64 MiB. Prints its s3:// URI.',
  ),
  submit: verb(
    'submit <job> <s3-uri> [options]',
    'Submits a registered job on a dataset in S3. Prints the job id.',
    `  --chunk-size SIZE | --chunks N, --concurrency N, --params JSON, --on-bad-record fail|skip,
  --max-attempts N, --tolerated-failure-percent P, --tolerated-failure-count N,
  --format jsonl|csv|lines|parquet, --columns A,B, --no-speculation, --guided-tail,
  --partitions N, --result-format json|jsonl, --no-reuse
               as for 'fanout run' (see 'fanout help run')
`,
  ),
  status: verb(
    'status <jobId> [--watch] [--api URL]',
    "Prints the job's status document (JSON).",
    `  --watch      show a progress bar until the job ends; exit 1 if it did not succeed
`,
  ),
  result: verb(
    'result <jobId> [--output FILE] [--follow] [--api URL]',
    'Prints the result of a SUCCEEDED job, or writes it to FILE. A job that has not succeeded\nexits 1.',
    `  --output FILE  write the result there instead of stdout
  --follow       a map-only job: its lines as its chunks finish, in input order, while it
                 runs (GET /jobs/{id}/results?after=N), until every line is out; a job that
                 ends FAILED or CANCELLED ends them with its error (exit 1)
`,
  ),
  report: verb(
    'report <jobId> [--output FILE] [--api URL]',
    'Prints the job report (one self-contained HTML page: timeline, concurrency, throughput,\ndurations, errors, cost), or writes it to FILE.',
    `  --output FILE  write the report there instead of stdout
`,
  ),
  jobs: verb(
    'jobs [--limit N] [--cursor C] [--api URL]',
    'Lists the most recent jobs, newest first, a page at a time.',
    `  --limit N    jobs per page, 1 to 100 (default 20)
  --cursor C   the page after C (printed as "more: fanout jobs --cursor C")
`,
  ),
  cancel: verb(
    'cancel <jobId> [--wait] [--json] [--api URL]',
    'Cancels a job: no chunk starts after the answer; CANCELLED once in-flight chunks finish\n(at once if the job is QUEUED or its coordinator was lost). Prints what it did in one line;\n--wait waits until the job has ended, --json prints its status instead.',
  ),
  redrive: verb(
    'redrive <jobId> [--wait] [--json] [--api URL]',
    'Reruns the chunks of a FAILED or CANCELLED job (or a RUNNING one whose coordinator was\nlost) that did not succeed, then reduces. The inputs must be unchanged. --wait waits until\nthe job has ended, --json prints its status.',
  ),
  'list-jobs': `Usage: fanout list-jobs

Lists the jobs fanout can run: name, input format, kind (map-only, reduce, keyed: a
group-by, or sorted), description.

${EXIT_CODES}
`,
  help: `Usage: fanout help [command]

Shows the help of a command, or the list of commands. 'fanout --version' prints the version.
`,
};

//! Turns a "fetch one page" function into a stream of items that follows `next_cursor`.

use std::future::Future;

use bank_api::Page;
use futures::stream::{self, Stream, TryStreamExt};

use crate::ClientError;

enum Next {
    Start,
    Cursor(String),
    Done,
}

/// Fetches pages lazily, one at a time, as the stream is polled; ends after the page without a
/// cursor, or with an error if the server hands back the cursor it was just given (which would
/// otherwise loop forever).
pub(crate) fn paginate<T, F, Fut>(fetch: F) -> impl Stream<Item = Result<T, ClientError>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, ClientError>>,
{
    stream::try_unfold((fetch, Next::Start), |(mut fetch, next)| async move {
        let cursor = match next {
            Next::Done => return Ok(None),
            Next::Start => None,
            Next::Cursor(cursor) => Some(cursor),
        };
        let page = fetch(cursor.clone()).await?;
        let next = match page.next_cursor {
            None => Next::Done,
            Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                return Err(ClientError::Decode(format!("the server returned cursor {next:?} twice")));
            }
            Some(next) => Next::Cursor(next),
        };
        let items = stream::iter(page.items.into_iter().map(Ok::<T, ClientError>));
        Ok(Some((items, (fetch, next))))
    })
    .try_flatten()
}

//! One page of a long list: `?page=N&per_page=M`, with links that keep
//! every other parameter (filters, search, sort). Filters and search run
//! over the whole list first, so a search finds what is on any page.

use super::*;

/// Rows on a page when none is asked for: at 5,000 hosts the page stays
/// far under 200 KB.
pub const DEFAULT_PER_PAGE: usize = 100;
/// The most rows a page gives, whatever is asked.
pub const MAX_PER_PAGE: usize = 1000;

/// Which slice of a list a request asked for.
pub struct Paging {
    pub page: usize,
    pub per_page: usize,
    pub total: usize,
}

impl Paging {
    /// The page `q` asks for of `total` rows; out-of-range asks are
    /// clamped, never an error.
    pub fn of(q: &HashMap<String, String>, total: usize) -> Paging {
        let num = |k: &str| q.get(k).and_then(|v| v.trim().parse::<usize>().ok());
        let per_page = num("per_page")
            .unwrap_or(DEFAULT_PER_PAGE)
            .clamp(1, MAX_PER_PAGE);
        let pages = total.div_ceil(per_page).max(1);
        Paging {
            page: num("page").unwrap_or(1).clamp(1, pages),
            per_page,
            total,
        }
    }

    pub fn pages(&self) -> usize {
        self.total.div_ceil(self.per_page).max(1)
    }

    /// This page's rows of `all`.
    pub fn slice<'a, T>(&self, all: &'a [T]) -> &'a [T] {
        let start = ((self.page - 1) * self.per_page).min(all.len());
        let end = (start + self.per_page).min(all.len());
        &all[start..end]
    }

    /// The address of page `n` of `path`, keeping the other parameters.
    pub fn link(&self, path: &str, q: &HashMap<String, String>, n: usize) -> String {
        let mut p: Vec<(&String, &String)> = q.iter().filter(|(k, _)| *k != "page").collect();
        p.sort();
        let mut qs: Vec<String> = p
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        qs.push(format!("page={n}"));
        format!("{path}?{}", qs.join("&"))
    }

    fn neighbour(&self, path: &str, q: &HashMap<String, String>, next: bool) -> Option<String> {
        let n = if next {
            Some(self.page + 1).filter(|n| *n <= self.pages())
        } else {
            self.page.checked_sub(1).filter(|n| *n >= 1)
        };
        n.map(|n| self.link(path, q, n))
    }

    /// The paging fields of a JSON twin.
    pub fn json(&self, path: &str, q: &HashMap<String, String>) -> Value {
        json!({
            "total": self.total,
            "page": self.page,
            "per_page": self.per_page,
            "pages": self.pages(),
            "next": self.neighbour(path, q, true),
            "prev": self.neighbour(path, q, false),
        })
    }

    /// "Rows 101–200 of 5000", and links to the first, previous, next and
    /// last pages.
    pub fn nav(&self, path: &str, q: &HashMap<String, String>, what: &str) -> Markup {
        let first = (self.page - 1) * self.per_page + 1;
        let last = (first + self.per_page - 1).min(self.total);
        let link = |label: &str, n: usize, rel: &str| {
            html! { a href=(self.link(path, q, n)) rel=(rel) { (label) } }
        };
        html! {
            nav class="pages" aria-label=(format!("pages of {what}")) {
                @if self.total == 0 { "No " (what) "." } @else { (what) " " (first) "–" (last) " of " (self.total) }
                @if self.pages() > 1 {
                    " · page " (self.page) " of " (self.pages()) " "
                    @if self.page > 1 { (link("first", 1, "first")) " " (link("previous", self.page - 1, "prev")) " " }
                    @if self.page < self.pages() { (link("next", self.page + 1, "next")) " " (link("last", self.pages(), "last")) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pages_clamp_and_links_keep_the_filters() {
        let rows: Vec<usize> = (0..250).collect();
        let p = Paging::of(&q(&[("page", "3"), ("state", "new")]), rows.len());
        assert_eq!(p.slice(&rows), &rows[200..250]);
        assert_eq!(p.pages(), 3);
        let j = p.json("/discovered", &q(&[("page", "3"), ("state", "new")]));
        assert_eq!(j["next"], Value::Null);
        assert_eq!(j["prev"], "/discovered?state=new&page=2");
        // Beyond the end, zero, junk and huge sizes are clamped.
        assert_eq!(Paging::of(&q(&[("page", "99")]), 250).page, 3);
        assert_eq!(Paging::of(&q(&[("page", "0")]), 250).page, 1);
        assert_eq!(Paging::of(&q(&[("page", "x")]), 250).page, 1);
        assert_eq!(
            Paging::of(&q(&[("per_page", "1000000")]), 250).per_page,
            MAX_PER_PAGE
        );
        assert_eq!(Paging::of(&q(&[]), 0).slice(&rows[..0]).len(), 0);
    }
}
